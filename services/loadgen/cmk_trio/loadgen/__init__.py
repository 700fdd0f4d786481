"""`cmk load`: a load generator for the trio (scenarios, closed and open loop, HDR
latency histograms)."""
