"""AWS library errors as one-line `ProviderError`s that name the API call and what to do next.

Kept apart from `aws.py` so the mapping (which error codes mean expired
credentials, which permission a denied call needs) can be read and tested alone.
"""

from __future__ import annotations

from irctl.errors import ProviderError

# IAM action prefixes differ from botocore's client names for these services.
IAM_PREFIX = {"ec2": "ec2", "elbv2": "elasticloadbalancing", "autoscaling": "autoscaling"}

_EXPIRED = {"ExpiredToken", "ExpiredTokenException", "RequestExpired", "TokenRefreshRequired"}
_DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "AuthFailure"}
_BAD_KEY = {"InvalidClientTokenId", "SignatureDoesNotMatch", "UnrecognizedClientException"}
_THROTTLED = {
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
}


def api_name(service: str, method: str) -> str:
    """`ec2.RunInstances` from ("ec2", "run_instances"): how AWS docs and IAM name the call."""
    return f"{service}.{''.join(part.title() for part in method.split('_'))}"


def permission(service: str, method: str) -> str:
    return f"{IAM_PREFIX.get(service, service)}:{api_name(service, method).split('.', 1)[1]}"


def wrap(exc: Exception, service: str, method: str) -> ProviderError:
    """The operator-facing error for a failed call; library types are checked by name so that
    this module never imports botocore itself."""
    call = api_name(service, method)
    kind = type(exc).__name__
    if kind in ("NoCredentialsError", "PartialCredentialsError"):
        return ProviderError(
            f"{call}: no AWS credentials found",
            "set AWS_PROFILE (or aws.profile in the inventory), or run `aws sso login`; "
            'against the drill lab: eval "$(irctl lab env)"',
        )
    if kind in ("ProfileNotFound",):
        return ProviderError(
            f"AWS profile not found: {exc}",
            "fix aws.profile in the inventory or AWS_PROFILE; `aws configure list-profiles`",
        )
    if kind in ("TokenRetrievalError", "SSOTokenLoadError", "UnauthorizedSSOTokenError"):
        return ProviderError(
            f"{call}: the AWS SSO session has expired", "run `aws sso login` and retry"
        )
    if kind in ("EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError"):
        return ProviderError(
            f"{call}: cannot reach the AWS endpoint ({kind})",
            "check the network and aws.endpoint_url/region in the inventory, then retry",
        )
    if kind == "ParamValidationError":
        return ProviderError(f"{call}: invalid request: {exc}", "this is a bug in irctl: report it")
    if kind == "ClientError":
        error = getattr(exc, "response", {}).get("Error", {})
        code = str(error.get("Code", "Unknown"))
        message = str(error.get("Message", "")) or code
        if code in _EXPIRED:
            return ProviderError(
                f"{call}: the AWS credentials have expired ({code})",
                "refresh them (`aws sso login` or new session keys) and retry",
            )
        if code in _DENIED:
            return ProviderError(
                f"{call}: access denied ({code})",
                f"the role needs the IAM permission {permission(service, method)}",
            )
        if code in _BAD_KEY:
            return ProviderError(
                f"{call}: AWS rejected the credentials ({code})",
                "check the access key of the profile in use (`aws sts get-caller-identity`)",
            )
        if code in _THROTTLED:
            return ProviderError(
                f"{call}: AWS is throttling requests ({code}) after retries",
                "wait a minute and resume the run; lower concurrency of the step",
            )
        return ProviderError(f"{call}: {code}: {message}", "check the request and the AWS console")
    if kind == "WaiterError":
        return ProviderError(f"{call}: {exc}", "check the resource in the AWS console")
    return ProviderError(f"{call}: {kind}: {exc}", "retry; if it persists, check the AWS console")
