"""Layer 5, the recipes: training, checkpoints, and each way of distilling (token, hidden, sequence, on-policy, weak-to-strong).

May import: every layer below (engine, losses, nn, tasks); the caller picks the recipe, a recipe never imports its caller.
"""
