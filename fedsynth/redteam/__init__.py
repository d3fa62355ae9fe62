"""The red team's experiments: run the malicious server against simulated hospitals, score what it
recovered against the true records, and set it beside the theoretical reconstruction bounds."""
