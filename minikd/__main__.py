"""``python -m minikd`` runs the command line."""

import sys

from minikd.cli import main

sys.exit(main())
