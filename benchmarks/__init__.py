"""Side-by-side benchmarks of requests-resilience and the tools users would pick instead."""
