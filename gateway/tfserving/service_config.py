"""The gRPC channel's service config: calls spread round-robin over every TF Serving replica.

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

The policy is set as the channel's default service config
(https://github.com/grpc/grpc/blob/master/doc/service_config.md), and the
config a resolver may publish (DNS TXT records) is ignored, so the gateway's
choice is the only one in force whatever the cluster's DNS answers.

Decisions:
- No `retryPolicy` in the config. grpc_transport.py already sends a call that
  failed UNAVAILABLE once more; with round_robin that second call is picked
  among the replicas still connected, so it goes to another one at once. A
  retryPolicy retry would fail at once with no replica connected, where the
  transport's waits for one (a single TF Serving restarting), and two retry
  layers would multiply attempts; the transport's retry is the one the tests
  prove (test/unit/test_grpc_service_config.py, test/e2e/test_grpc_round_robin.py).
  gRPC's transparent retries (on by default) still resend a call that never
  reached a server, such as one racing a GOAWAY.
- New pods: the DNS resolver re-resolves when a connection drops. TF Serving's
  `--grpc_channel_arguments=grpc.max_connection_age_ms=30000` ends each
  connection after 30 s (GOAWAY, calls in flight finish), so every gateway
  looks the Service up again and connects to pods added since.
"""

import json

ROUND_ROBIN_SERVICE_CONFIG = json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})

# Channel options that put the config above in force (gRPC core's channel argument names).
BALANCING_OPTIONS: list[tuple[str, str | int]] = [
    ("grpc.service_config", ROUND_ROBIN_SERVICE_CONFIG),
    ("grpc.service_config_disable_resolution", 1),
]
