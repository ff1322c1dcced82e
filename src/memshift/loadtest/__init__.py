"""``memshift loadtest``: a memory-service workload against a store or the proxy.

The mix of operations and the spread of content sizes are the service's users' own
(mostly reads and searches; contents from 100 B to 100 KB of real text); the run is
bounded in time and reports count, errors, throughput and latency per operation.
"""
