"""The runtime layer: what is neither wire nor backend.

Delivery and retries, CloudEvents, secret scopes, the sequencer's segment cache and the
validation rules shared by every wire API live here, once. Modules under this package
import no grpc and no generated proto code: the gRPC services in ``layotto.server.api``
(and any other front end) only convert messages and call into this layer.
"""
