"""The ``fedsynth`` command line."""
