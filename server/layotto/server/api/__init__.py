"""gRPC APIs: one module per building block, assembled into services in services.py."""
