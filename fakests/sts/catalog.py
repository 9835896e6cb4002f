"""The AADSTS catalog: every Entra error code fakests can produce, as data.

Each entry says what Entra puts on the wire for that code: the OAuth ``error`` value, the HTTP
status at the token endpoint, the optional ``suberror``, a message template (``str.format`` with
named fields), whether a client may retry it, and how sure we are (``evidence``):
``recorded`` (seen in captured Entra traffic), ``documented`` (Microsoft's AADSTS reference,
learn.microsoft.com/entra/identity-platform/reference-error-codes) or ``inferred``.
Sources per code are in ``../shared/entra-wire.md`` §6. Rendering happens in ``errors.py`` only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from string import Formatter
from typing import Literal

Evidence = Literal["recorded", "documented", "inferred"]


@dataclass(frozen=True, slots=True)
class Aadsts:
    """One AADSTS code as Entra renders it."""

    code: int
    name: str
    error: str
    status: int
    message: str
    transient: bool = False
    suberror: str | None = None
    evidence: Evidence = "documented"

    @property
    def fields(self) -> frozenset[str]:
        """The template's named fields, so callers and tests can check what a code needs."""
        return frozenset(f for _, f, _, _ in Formatter().parse(self.message) if f)


def _e(code: int, name: str, error: str, status: int, message: str, **kw: object) -> Aadsts:
    return Aadsts(code, name, error, status, message, **kw)  # type: ignore[arg-type]


_ENTRIES: tuple[Aadsts, ...] = (
    # --- request shape -------------------------------------------------------------------------------
    _e(900144, "MissingParameter", "invalid_request", 400,
       "The request body must contain the following parameter: '{parameter}'.", evidence="recorded"),
    _e(9002313, "InvalidRequest", "invalid_request", 400,
       "Invalid request. Request is malformed or invalid. - The issue here is because there was "
       "something wrong with the request to a certain endpoint. {detail}"),
    _e(90014, "MissingRequiredField", "invalid_request", 400,
       "The required field '{field}' is missing from the credential. Ensure that you have all the "
       "necessary parameters for the login request."),
    _e(70003, "UnsupportedGrantType", "unsupported_grant_type", 400,
       "The app requested an unsupported grant type '{grant_type}'."),
    _e(900561, "BadRequestInvalidHttpMethod", "invalid_request", 400,
       "The endpoint only accepts {methods} requests. Received a {method} request."),
    _e(90100, "InvalidRequestParameter", "invalid_request", 400,
       "The parameter '{parameter}' is empty or not valid."),
    _e(90090, "GraphRetryableError", "temporarily_unavailable", 503,
       "The service is temporarily unavailable.", transient=True),
    # --- tenants and instances --------------------------------------------------------------------
    _e(90002, "InvalidTenantName", "invalid_request", 400,
       "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are "
       "signing into the correct cloud. Check with your subscription administrator, this may happen "
       "if there are no active subscriptions for the tenant.", evidence="recorded"),
    _e(50049, "NoSuchInstanceForDiscovery", "invalid_instance", 400,
       "Unknown or invalid instance.", evidence="recorded"),
    _e(50194, "InvalidMultiTenantApplicationConfiguration", "invalid_request", 400,
       "Application '{client_id}'({app_name}) is not configured as a multi-tenant application. Usage "
       "of the /common endpoint is not supported for such applications created after '10/15/2018'. "
       "Use a tenant-specific endpoint or configure the application to be multi-tenant."),
    _e(9001023, "CommonEndpointNotSupported", "invalid_request", 400,
       "The grant type '{grant_type}' is not supported over the /{segment} endpoint. Please use the "
       "/organizations or tenant-specific endpoint."),
    # --- clients ----------------------------------------------------------------------------------
    _e(700016, "UnauthorizedClient_DoesNotMatchRequest", "unauthorized_client", 400,
       "Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can "
       "happen if the application has not been installed by the administrator of the tenant or "
       "consented to by any user in the tenant. You may have sent your authentication request to the "
       "wrong tenant."),
    _e(7000112, "UnauthorizedClientApplicationDisabled", "unauthorized_client", 400,
       "Application '{client_id}'({app_name}) is disabled."),
    _e(7000215, "InvalidClientSecretProvided", "invalid_client", 401,
       "Invalid client secret provided. Ensure the secret being sent in the request is the client "
       "secret value, not the client secret ID, for a secret added to app '{client_id}'.",
       evidence="recorded"),
    _e(7000218, "MissingClientCredential", "invalid_client", 401,
       "The request body must contain the following parameter: 'client_assertion' or "
       "'client_secret'.", evidence="recorded"),
    _e(7000222, "InvalidClientSecretExpiredKeysProvided", "invalid_client", 401,
       "The provided client secret keys for app '{client_id}' are expired. Visit the Azure portal to "
       "create new keys for your app: https://aka.ms/NewClientSecret, or consider using certificate "
       "credentials for added security: https://aka.ms/certCreds."),
    _e(700025, "InvalidClientPublicClientWithCredential", "invalid_client", 401,
       "Client is public so neither 'client_assertion' nor 'client_secret' should be presented.",
       evidence="recorded"),
    _e(700027, "Client assertion failed signature validation", "invalid_client", 401,
       "Client assertion failed signature validation. [Reason - {reason}, Thumbprint of key used by "
       "client: '{thumbprint}']", evidence="recorded"),
    _e(700024, "ClientAssertionNotWithinValidTimeRange", "invalid_client", 401,
       "Client assertion is not within its valid time range. Current time: {now}, assertion valid "
       "from {nbf}, expiry time of assertion {exp}.", evidence="inferred"),
    _e(700023, "InvalidAudienceClientAssertion", "invalid_client", 401,
       "Client assertion audience claim does not match Realm issuer. Review the documentation at "
       "https://learn.microsoft.com/entra/identity-platform/certificate-credentials. Audience: "
       "'{aud}'.", evidence="inferred"),
    _e(50048, "SubjectMismatchesIssuer", "invalid_client", 401,
       "Subject mismatches Issuer claim in the client assertion. Contact the tenant admin.",
       evidence="inferred"),
    _e(700021, "ClientAssertionClientIdMismatch", "invalid_client", 401,
       "Client assertion application identifier doesn't match 'client_id' parameter. Review the "
       "documentation at https://learn.microsoft.com/entra/identity-platform/certificate-credentials.",
       evidence="inferred"),
    # --- workload identity federation: an external token as the client assertion ------------------------
    # Checked against the app's federated identity credentials: issuer, then subject, then audience.
    _e(700211, "NoMatchingFederatedIdentityRecordIssuer", "invalid_client", 401,
       "No matching federated identity record found for presented assertion issuer '{issuer}'. Please check "
       "your federated identity credential Subject, Audience and Issuer against the presented assertion. "
       "https://docs.microsoft.com/en-us/azure/active-directory/develop/workload-identity-federation",
       evidence="recorded"),  # Azure/azure-workload-identity#1200 (2024-03)
    _e(700213, "NoMatchingFederatedIdentityRecordSubject", "invalid_client", 401,
       "No matching federated identity record found for presented assertion subject '{subject}'. Check your "
       "federated identity credential Subject, Audience and Issuer against the presented assertion. "
       "https://learn.microsoft.com/entra/workload-id/workload-identity-federation",
       evidence="recorded"),  # Azure/azure-workload-identity#1200 (2025-04); Azure/login#482
    _e(700212, "NoMatchingFederatedIdentityRecordAudience", "invalid_client", 401,
       "No matching federated identity record found for presented assertion audience '{audience}'. Please check "
       "your federated identity credential Subject, Audience and Issuer against the presented assertion. "
       "https://docs.microsoft.com/en-us/azure/active-directory/develop/workload-identity-federation",
       evidence="recorded"),  # an Entra answer quoted in a public Java test (AzureAccessTokenProviderTest)
    _e(70021, "NoMatchingFederatedIdentityRecord", "invalid_request", 400,
       "No matching federated identity record found for presented assertion. Assertion Issuer: '{issuer}'. "
       "Assertion Subject: '{subject}'. Assertion Audience: '{audience}'. "
       "https://docs.microsoft.com/en-us/azure/active-directory/develop/workload-identity-federation",
       evidence="recorded"),  # Azure/azure-workload-identity#616 (2022): the older, single code; scripted only
    _e(7000272, "FederatedCredentialSigningKeyNotFound", "invalid_client", 401,
       "The certificate with identifier {kid} used to sign the federated credential could not be found in the "
       "metadata of identity provider {issuer}. Please validate that your Identity Provider's metadata exposes "
       "the key used to sign the incoming token.", evidence="recorded"),  # Azure/azure-workload-identity#1232
    _e(501661, "ExternalOidcEndpointFailed", "invalid_client", 401,
       "Request to External OIDC endpoint failed.",
       evidence="inferred"),  # the message: GitLab's Azure OIDC docs; error value and status inferred
    _e(700054, "ResponseTypeNotEnabled", "unsupported_response_type", 400,
       "response_type '{response_type}' is not enabled for the application."),
    _e(700022, "InvalidMultipleResourcesScope", "invalid_scope", 400,
       "The provided value for the input parameter scope isn't valid because it contains more than "
       "one resource. Scope {scope} is not valid."),
    _e(1002012, "InvalidScopeClientCredential", "invalid_scope", 400,
       "The provided value for scope {scope} is not valid. Client credential flows must have a scope "
       "value with /.default suffixed to the resource identifier (application ID URI)."),
    # --- browsers: cross-origin redemption (entra-docs v2-oauth2-auth-code-flow.md; clients-2026.md §3)
    _e(9002326, "CrossOriginRedemptionOnlyForSpa", "invalid_request", 400,
       "Cross-origin token redemption is permitted only for the 'Single-Page Application' client-type. "
       "Request origin: '{origin}'.", evidence="recorded"),  # MicrosoftDocs/azure-docs#100859, msal-js#5196
    _e(9002327, "SpaTokensOnlyCrossOrigin", "invalid_request", 400,
       "Tokens issued for the 'Single-Page Application' client-type may only be redeemed via cross-origin "
       "requests.", evidence="recorded"),  # msal-js#2482, #3032
    _e(9002325, "PkceRequiredForCrossOrigin", "invalid_request", 400,
       "Proof Key for Code Exchange is required for cross-origin authorization code redemption."),
    # --- redirect URIs and authorize ----------------------------------------------------------------
    _e(50011, "InvalidReplyTo", "invalid_request", 400,
       "The redirect URI '{redirect_uri}' specified in the request does not match the redirect URIs "
       "configured for the application '{client_id}'. Make sure the redirect URI sent in the request "
       "matches one added to your application in the Azure portal. Navigate to "
       "https://aka.ms/redirectUriMismatchError to learn more about how to fix this."),
    _e(500113, "NoReplyAddressesConfigured", "invalid_request", 400,
       "No reply address is registered for the application."),
    _e(90008, "TokenForItselfRequiresGraphPermission", "invalid_request", 400,
       "The user or administrator hasn't consented to use the application. At the minimum, the "
       "application requires access to Microsoft Entra ID by specifying the sign-in and read user "
       "profile permission."),
    _e(50058, "UserInformationNotProvided", "login_required", 400,
       "A silent sign-in request was sent but no user is signed in. The cookies used to represent the "
       "user's session were not sent in the request to Microsoft Entra ID."),
    _e(65001, "DelegationDoesNotExist", "invalid_grant", 400,
       "The user or administrator has not consented to use the application with ID '{client_id}' "
       "named '{app_name}'. Send an interactive authorization request for this user and resource.",
       suberror="consent_required", evidence="recorded"),
    _e(65004, "UserDeclinedConsent", "access_denied", 400,
       "User declined to consent to access the app."),
    _e(50148, "CodeChallengeMismatchLegacy", "invalid_grant", 400,
       "The code_verifier does not match the code_challenge supplied in the authorization request "
       "for PKCE."),
    _e(501481, "CodeVerifierMismatch", "invalid_grant", 400,
       "The Code_Verifier does not match the code_challenge supplied in the authorization request."),
    _e(5000811, "InvalidCodeChallengeMethodInvalidSize", "invalid_request", 400,
       "Proof Key for Code Exchange is required for cross-origin authorization code redemption."),
    _e(50196, "LoopDetected", "invalid_grant", 400,
       "The server terminated an operation because it encountered a client request loop. Please "
       "contact your app vendor."),
    # --- grants -----------------------------------------------------------------------------------
    _e(70000, "InvalidGrant", "invalid_grant", 400,
       "The provided value for the '{parameter}' is not valid. {detail}"),
    # Redeeming a code with another redirect_uri than the authorize request's: reported as AADSTS500112
    # (with invalid_client) by many users of Entra today; entra-wire.md has no capture of it yet.
    _e(500112, "ReplyAddressMismatch", "invalid_client", 401,
       "The reply address '{redirect_uri}' does not match the reply address '{expected}' provided when "
       "requesting Authorization code.", evidence="inferred"),
    _e(700005, "InvalidGrantRedeemAgainstWrongTenant", "invalid_grant", 400,
       "Provided Authorization Code is intended to use against other tenant or application, thus "
       "rejected."),
    _e(54005, "AuthCodeAlreadyRedeemed", "invalid_grant", 400,
       "OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an "
       "existing refresh token."),
    _e(70008, "ExpiredOrRevokedGrant", "invalid_grant", 400,
       "The provided authorization code or refresh token has expired due to inactivity. Send a new "
       "interactive authorization request for this user and resource."),
    _e(700082, "ExpiredOrRevokedGrantInactiveToken", "invalid_grant", 400,
       "The refresh token has expired due to inactivity. The token was issued on {issued} and was "
       "inactive for {inactive}.", suberror="bad_token"),
    _e(700084, "SpaRefreshTokenExpired", "invalid_grant", 400,
       "The refresh token was issued to a single page app (SPA), and therefore has a fixed, limited lifetime "
       "of 1.00:00:00, which cannot be extended. It is now expired and a new sign in request must be sent by "
       "the SPA to the sign in page. The token was issued on {issued}.",  # msal-js#6765
       evidence="recorded"),
    _e(50173, "FreshTokenNeeded", "invalid_grant", 400,
       "The provided grant has expired due to it being revoked, a fresh auth token is needed. The "
       "user might have changed or reset their password. The grant was issued on '{issued}' and the "
       "TokensValidFrom date (before which tokens are not valid) for this user is '{valid_from}'.",
       suberror="bad_token", evidence="recorded"),
    _e(70011, "InvalidScope", "invalid_scope", 400,
       "The provided request must include a 'scope' input parameter. The provided value for the input "
       "parameter 'scope' is not valid. The scope {scope} is not valid."),
    _e(500011, "InvalidResourceServicePrincipalNotFound", "invalid_resource", 400,
       "The resource principal named {resource} was not found in the tenant named {tenant}. This can "
       "happen if the application has not been installed by the administrator of the tenant or "
       "consented to by any user in the tenant. You might have sent your authentication request to "
       "the wrong tenant."),
    _e(50013, "InvalidAssertion", "invalid_grant", 400,
       "Assertion failed signature validation. [Reason - {reason}]"),
    _e(500133, "TokenNotWithinValidTimeRange", "invalid_grant", 400,
       "Assertion is not within its valid time range. Ensure that the access token is not expired "
       "before using it for user assertion, or request a new token. Current time: {now}, expiry time "
       "of assertion {exp}."),
    _e(50027, "InvalidJwtToken", "invalid_grant", 400,
       "Invalid JWT token. {reason}"),
    _e(70016, "AuthorizationPending", "authorization_pending", 400,
       "OAuth 2.0 device flow error. Authorization is pending. Continue polling.",
       evidence="recorded"),
    _e(70019, "CodeExpired", "expired_token", 400, "Verification code expired."),
    _e(70020, "SlowDown", "slow_down", 400,
       "OAuth 2.0 device flow error. The client is polling too quickly. Slow down.",
       evidence="inferred"),
    _e(70022, "AuthorizationDeclined", "authorization_declined", 400,
       "The end user denied the authorization request.", evidence="inferred"),
    _e(70018, "BadVerificationCode", "bad_verification_code", 400,
       "Invalid verification code due to User typing in wrong user code for device code flow. "
       "Authorization isn't approved."),
    # --- users ------------------------------------------------------------------------------------
    _e(50034, "UserAccountNotFound", "invalid_grant", 400,
       "The user account {username} does not exist in the {tenant} directory. To sign into this "
       "application, the account must be added to the directory.", suberror="bad_token", evidence="recorded"),
    _e(50126, "InvalidUserNameOrPassword", "invalid_grant", 400,
       "Error validating credentials due to invalid username or password."),
    _e(50053, "IdsLocked", "invalid_grant", 400,
       "Your account is locked because you've tried to sign in too many times with an incorrect user "
       "ID or password."),
    _e(50055, "InvalidPasswordExpiredPassword", "invalid_grant", 400,
       "The password is expired.", suberror="user_password_expired"),
    _e(50057, "UserDisabled", "invalid_grant", 400,
       "The user account is disabled. The user object in Active Directory backing this account has "
       "been disabled. An admin can re-enable this account through PowerShell."),
    _e(50020, "UserUnauthorized", "invalid_grant", 400,
       "User account '{username}' from identity provider '{idp}' does not exist in tenant "
       "'{tenant_name}' and cannot access the application '{client_id}'({app_name}) in that tenant."),
    _e(50076, "UserStrongAuthClientAuthNRequired", "invalid_grant", 400,
       "Due to a configuration change made by your administrator, or because you moved to a new "
       "location, you must use multi-factor authentication to access '{resource}'.",
       suberror="basic_action", evidence="recorded"),
    _e(50079, "UserStrongAuthEnrollmentRequired", "interaction_required", 400,
       "Due to a configuration change made by your administrator, or because you moved to a new "
       "location, you must enroll in multifactor authentication to access '{resource}'."),
    _e(53003, "BlockedByConditionalAccess", "invalid_grant", 400,
       "Access has been blocked by Conditional Access policies. The access policy does not allow "
       "token issuance.", suberror="message_only", evidence="recorded"),
    _e(50105, "EntitlementGrantsNotFound", "invalid_grant", 400,
       "Your administrator has configured the application {app_name} ('{client_id}') to block users "
       "unless they are specifically granted ('assigned') access to the application."),
    # --- service errors ---------------------------------------------------------------------------
    _e(70012, "MsaServerError", "server_error", 500,
       "A server error occurred while authenticating an MSA (consumer) user. Try again. If it "
       "continues to fail, open a support ticket", transient=True),
    _e(50000, "TokenIssuanceError", "server_error", 500,
       "There's an issue with the sign-in service. Open a support ticket to resolve this issue.",
       transient=True),
    _e(90055, "TenantThrottlingError", "temporarily_unavailable", 429,
       "There are too many incoming requests. This exception is thrown for blocked tenants.", transient=True),
    _e(50033, "RetryableError", "temporarily_unavailable", 503,
       "Indicates a transient error not related to the database operations.", transient=True),
    _e(50087, "SasRetryableError", "temporarily_unavailable", 503,
       "A transient error has occurred during strong authentication. Please try again.", transient=True),
    _e(90006, "ExternalServerRetryableError", "temporarily_unavailable", 503,
       "The service is temporarily unavailable.", transient=True),
    _e(90024, "RequestBudgetExceededError", "temporarily_unavailable", 503,
       "A transient error has occurred. Try again.", transient=True),
    _e(16000, "InteractionRequired", "interaction_required", 400,
       "User account '{username}' from identity provider '{idp}' does not exist in tenant '{tenant_name}' and "
       "cannot access the application '{client_id}'({app_name}) in that tenant.", evidence="inferred"),
    _e(50158, "ExternalSecurityChallenge", "interaction_required", 400,
       "External security challenge was not satisfied.", suberror="basic_action", evidence="inferred"),
    _e(530003, "DeviceNotManaged", "interaction_required", 400,
       "Your device is required to be managed to access this resource.", evidence="inferred"),
    _e(70043, "BadTokenDueToSignInFrequency", "invalid_grant", 400,
       "The refresh token has expired or is invalid due to sign-in frequency checks by conditional access. The "
       "token was issued on {issued} and the maximum allowed lifetime for this request is {lifetime}.",
       suberror="bad_token"),
    _e(90072, "PassThroughUserMfaError", "invalid_grant", 400,
       "The external account that the user signs in with doesn't exist on the tenant that they signed into; so "
       "the user can't satisfy the MFA requirements for the tenant.", evidence="inferred"),
    _e(81010, "DesktopSsoAuthTokenInvalid", "invalid_grant", 400,
       "Seamless SSO failed because the user's Kerberos ticket has expired or is invalid.", evidence="inferred"),
    _e(90033, "MsodsServiceUnavailable", "temporarily_unavailable", 503,
       "A transient error has occurred. Please try again.", transient=True),
)

CATALOG: Mapping[int, Aadsts] = {e.code: e for e in _ENTRIES}


def lookup(code: int) -> Aadsts:
    """The catalog entry for ``code``; ``KeyError`` names the code when the catalog lacks it."""
    try:
        return CATALOG[code]
    except KeyError:
        raise KeyError(f"AADSTS{code} is not in fakests' catalog") from None
