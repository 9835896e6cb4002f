from fakests.cli import main

raise SystemExit(main())
