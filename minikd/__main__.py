"""``python -m minikd`` runs the command line."""

import sys

from minikd.tools.cli import main

sys.exit(main())
