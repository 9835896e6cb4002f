// oauth2-mock-server (axa-group) for bench/throughput.py: one RS256 key (2048-bit, jose's default modulus),
// listening on 127.0.0.1 at the port given as the only argument; prints "listening <port>" once up.
//   node bench/peers/oauth2-mock-server.mjs 18080
import { OAuth2Server } from 'oauth2-mock-server';

const port = Number.parseInt(process.argv[2] ?? '', 10);
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  console.error('usage: node oauth2-mock-server.mjs PORT');
  process.exit(2);
}
const server = new OAuth2Server();
const key = await server.issuer.keys.generate('RS256');
if (Buffer.from(key.n, 'base64url').length * 8 !== 2048) {
  console.error('expected a 2048-bit RSA key');
  process.exit(1);
}
await server.start(port, '127.0.0.1');
console.log(`listening ${server.address().port}`);
const stop = () => { server.stop().finally(() => process.exit(0)); };
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
