"""Network addresses the gateway is given: HOST[:PORT] and gRPC targets, parsed strictly.

A malformed address used to pass the settings and fail later: an unbracketed
IPv6 address or a port that is not a number as an httpx.InvalidURL traceback
during start-up, and a gRPC target the channel cannot use (`ipv4:garbage`, a
port above 65535) as a gateway that stays unready with nothing logged. Every
address is checked here while the settings are read, so a bad one stops the
process with one line naming the forms accepted.

Hosts are DNS names (letters, digits, `-` and `_`, as Docker service names
may have one), dotted-quad IPv4 addresses or IPv6 addresses in brackets;
ports are 1 to 65535.
"""

import ipaddress
import re

HOST_PORT_FORMS = "HOST:PORT, with HOST a DNS name, an IPv4 address or [an IPv6 address]"
GRPC_TARGET_FORMS = (
    "HOST:PORT, [IPv6]:PORT, dns:///HOST:PORT (dns:HOST:PORT), "
    "ipv4:IP:PORT[,IP:PORT...], ipv6:[IP]:PORT[,[IP]:PORT...] or unix:PATH (unix:///ABSOLUTE)"
)

_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_DNS_NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?")
_MAX_NAME = 253  # RFC 1035 §2.3.4, without the final dot
_PORT = re.compile(r"[0-9]{1,5}")


def check_host(host: str) -> str:
    """`host` when it is a DNS name, an IPv4 address or a bracketed IPv6 address."""
    if host.startswith("[") or host.endswith("]"):
        try:
            if not (host.startswith("[") and host.endswith("]")):
                raise ValueError(host)
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise ValueError(f"{host!r} is not an IPv6 address in brackets") from None
        return host
    if ":" in host:
        raise ValueError(f"an IPv6 address goes in brackets, such as [::1]:8500; got {host!r}")
    if len(host.rstrip(".")) > _MAX_NAME or not _DNS_NAME.fullmatch(host):
        raise ValueError(f"{host!r} is not a DNS name or an IP address")
    if host.rstrip(".").rsplit(".", 1)[-1].isdigit():
        # No top-level domain is all digits (RFC 3696 §2): this is meant as IPv4.
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise ValueError(f"{host!r} is not an IPv4 address") from None
    return host


def split_host_port(text: str, *, port_required: bool) -> tuple[str, int | None]:
    """`HOST[:PORT]` as (host, port), port None when absent; ValueError for anything else."""
    if "/" in text:
        raise ValueError(f"{text!r} is not HOST[:PORT]: it has a scheme or a path")
    if text.startswith("["):
        end = text.find("]") + 1
        host, rest = (text[:end], text[end:]) if end else (text, "")
        if rest and not rest.startswith(":"):
            raise ValueError(f"{text!r} has something other than :PORT after the brackets")
        port_text: str | None = rest[1:] if rest else None
    else:
        host, colon, after = text.partition(":")
        if ":" in after:
            raise ValueError(f"an IPv6 address goes in brackets, such as [::1]:8500; got {text!r}")
        port_text = after if colon else None
    check_host(host)
    if port_text is None:
        if port_required:
            raise ValueError(f"{text!r} names no port")
        return host, None
    return host, check_port(port_text, text)


def check_port(port_text: str, where: str) -> int:
    """The port `port_text` spells, 1 to 65535 in decimal digits."""
    if not _PORT.fullmatch(port_text) or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"the port in {where!r} must be a number from 1 to 65535")
    return int(port_text)


def check_grpc_target(target: str) -> str:
    """`target` when it is one of gRPC's target forms with every port given.

    The forms are gRPC's name syntax (https://github.com/grpc/grpc/blob/master/doc/naming.md);
    gRPC would use port 443 where none is given, never TF Serving's 8500, so a port is
    required. A Unix socket is TF Serving's `--grpc_socket_path`
    (TFS/model_servers/main.cc).
    """
    scheme, _, rest = target.partition(":")
    try:
        if scheme == "dns":
            _check_dns(rest)
        elif scheme in ("ipv4", "ipv6"):
            _check_address_list(scheme, rest)
        elif scheme == "unix":
            _check_unix(rest)
        elif "," in target:
            raise ValueError(f"a list of addresses takes ipv4: or ipv6: in front; got {target!r}")
        else:
            split_host_port(target, port_required=True)
    except ValueError as exc:
        raise ValueError(f"{exc}; the accepted forms are {GRPC_TARGET_FORMS}") from None
    return target


def _check_dns(rest: str) -> None:
    if rest.startswith("//"):
        # dns://[authority]/host:port; the authority, when given, is the DNS server.
        authority, slash, rest = rest[2:].partition("/")
        if not slash:
            raise ValueError("dns://AUTHORITY needs /HOST:PORT after it")
        if authority:
            split_host_port(authority, port_required=False)
    split_host_port(rest, port_required=True)


def _check_address_list(scheme: str, rest: str) -> None:
    for address in rest.split(","):
        host, _ = split_host_port(address, port_required=True)
        try:
            ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            raise ValueError(f"{address!r} is not an IP address with its port") from None
        if (scheme == "ipv6") != host.startswith("["):
            raise ValueError(f"{address!r} is not an {scheme} address with its port")


def _check_unix(rest: str) -> None:
    if rest.startswith("//"):
        if not rest.startswith("///"):
            raise ValueError("unix:// takes an absolute path, unix:///PATH")
    elif not rest:
        raise ValueError("unix: needs a socket path")
    if "\0" in rest or rest != rest.strip():
        raise ValueError("a unix: socket path must not hold NUL or start or end with a blank")
