"""The gRPC channel's service config: calls round-robin over TF Serving replicas, outliers ejected.

One HTTP/2 connection carries every call, so a proxy or kube-proxy that balances
connections (a Kubernetes ClusterIP Service) pins all of a gateway's predictions
to one TF Serving pod. gRPC balances calls itself when its resolver returns
several addresses and the channel's load-balancing policy is `round_robin`
(https://github.com/grpc/grpc/blob/master/doc/load-balancing.md): one
subchannel (connection) per address, each call on the next READY one. The
addresses come from the target: `dns:///tensorflow-serving-grpc:8500` resolves
a headless Service to one A record per ready pod; `ipv4:10.0.0.1:8500,10.0.0.2:8500`
lists them (https://github.com/grpc/grpc/blob/master/doc/naming.md). With one
address round_robin behaves as pick_first (gRPC's default) did: one connection,
re-made when it drops.

round_robin only skips a replica whose connection is down. A replica that hangs
(a stopped or wedged process: its socket stays open) or answers NOT_FOUND (it
serves another version, or lacks the model) stays READY and keeps getting its
share of calls. So round_robin runs inside gRPC's outlier detection policy
(gRFC A50, https://github.com/grpc/proposal/blob/master/A50-xds-outlier-detection.md;
gRPC core's `src/core/load_balancing/outlier_detection/outlier_detection.cc`,
registered as `outlier_detection_experimental` and accepted by grpcio 1.85):
every `interval` it looks at each address's calls that ended in the interval
before (any status but OK is a failure, the client's own deadline included) and
ejects an address whose failures are over `threshold` percent: round_robin sees
it as TRANSIENT_FAILURE and picks the others until the ejection time has passed.

The policy is set as the channel's default service config
(https://github.com/grpc/grpc/blob/master/doc/service_config.md), and the
config a resolver may publish (DNS TXT records) is ignored, so the gateway's
choice is the only one in force whatever the cluster's DNS answers.

Decisions (docs/load-balancing.md has the measurements):
- Failure percentage, not success rate: success-rate ejection compares an address
  with the others' mean and standard deviation, and with three addresses one
  outlier is never more than 1.41 deviations from the mean (sqrt(n - 1)), so it
  either never ejects (the usual factor, 1.9) or ejects for any dip at all.
- `threshold` 50: an address is ejected when more than half its calls failed in
  one interval. A hung or NOT_FOUND-answering replica fails all of its calls; a
  version rollout or a passing error fails a few, which stay under it.
- `interval` 2 s with `requestVolume` 2: a replica is judged on the calls that
  ended in the last 2 s, if there were at least 2. A hung replica's failures
  arrive in a burst (the calls sent to it end together at the first attempt's
  deadline, grpc_transport.py) and a NOT_FOUND replica fails a third of the
  calls, so at 2 calls a second or more it is ejected at the next look. At 1 s
  and 3 calls a hung replica was never ejected under 8 clients on a busy
  machine: clients stuck on it made too few calls a second elsewhere for the
  healthy replicas to count. Below that rate the transport's retry alone hides
  the bad replica's failures.
- `minimumHosts` 2 and `maxEjectionPercent` 50: gRPC core always allows the first
  ejection and then stops once the ejected share reaches the maximum. Two
  addresses with enough calls are needed to judge at all, so a single TF Serving
  is never ejected (its NOT_FOUND during a version switch is how the backend
  learns of the switch, client.py); with two, one may be ejected; with three, two.
  At least one replica always stays in the rotation.
- `baseEjectionTime` 10 s, `maxEjectionTime` 120 s: an ejected replica gets calls
  again after 10 s times the number of times in a row it was ejected, so a
  recovered one is back within seconds and a hung one costs one burst of slow
  first attempts every 10, 20, 30 s ... at most every 2 minutes.
- No `retryPolicy` in the config. grpc_transport.py already sends a call that
  failed UNAVAILABLE, NOT_FOUND or past its first deadline once more; with
  round_robin that second call is picked among the replicas still connected, so
  it goes to another one at once. A retryPolicy retry would fail at once with no
  replica connected, where the transport's waits for one (a single TF Serving
  restarting), could not shorten the first attempt's deadline, and two retry
  layers would multiply attempts; the transport's retry is the one the tests
  prove (test/unit/test_grpc_service_config.py, test/e2e/test_grpc_round_robin.py).
  gRPC's transparent retries (on by default) still resend a call that never
  reached a server, such as one racing a GOAWAY.
- New pods: the DNS resolver re-resolves when a connection drops. TF Serving's
  `--grpc_channel_arguments=grpc.max_connection_age_ms=30000` ends each
  connection after 30 s (GOAWAY, calls in flight finish), so every gateway
  looks the Service up again and connects to pods added since.
"""

import ipaddress
import json

OUTLIER_EJECTION = {
    "interval": "2s",
    "baseEjectionTime": "10s",
    "maxEjectionTime": "120s",
    "maxEjectionPercent": 50,
    "failurePercentageEjection": {
        "threshold": 50,
        "enforcementPercentage": 100,
        "minimumHosts": 2,
        "requestVolume": 2,
    },
}
BALANCING_SERVICE_CONFIG = json.dumps(
    {
        "loadBalancingConfig": [
            {
                "outlier_detection_experimental": {
                    **OUTLIER_EJECTION,
                    "childPolicy": [{"round_robin": {}}],
                }
            }
        ]
    }
)

# Channel options that put the config above in force (gRPC core's channel argument names).
BALANCING_OPTIONS: list[tuple[str, str | int]] = [
    ("grpc.service_config", BALANCING_SERVICE_CONFIG),
    ("grpc.service_config_disable_resolution", 1),
]


def may_name_several_replicas(target: str) -> bool:
    """Whether `target` can resolve to more than one address: a name or a list may.

    One IP address (bare, `dns:///`, `ipv4:` or `ipv6:` with one entry) or a Unix
    socket names one server; any host name may resolve to several.
    """
    scheme, _, rest = target.partition(":")
    if scheme in ("ipv4", "ipv6"):
        return "," in rest
    if scheme in ("unix", "unix-abstract"):
        return False
    address = target.removeprefix("dns:").rsplit("/", 1)[-1]  # after a DNS server, if named
    host = address.rsplit(":", 1)[0] if not address.startswith("[") else address[1:].split("]")[0]
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return True
    return False
