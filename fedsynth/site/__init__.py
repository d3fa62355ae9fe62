"""The hospital's own side of the trust boundary: its site file, privacy policy and simulated faults.

A site file is owned by the hospital (a real one writes its own; a simulation writes one per
simulated hospital). Nothing here is read from the server's run configuration.
"""
