"""Reference solutions: what the checks compare a student's answer with (``minikd exercise list --json`` names each file)."""
