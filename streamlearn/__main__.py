"""``python -m streamlearn`` runs the command line."""

from streamlearn.cli import main

main()
