"""Layer 6, the tools: the command line, the demo, benchmarks, plots, figures, loss landscapes, tutorial helpers.

May import: every layer below. Nothing in minikd imports a tool except another tool.
"""
