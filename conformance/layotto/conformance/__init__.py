"""Layotto for Python: a proto-driven conformance suite for runtimes serving the Layotto and Dapr APIs."""
