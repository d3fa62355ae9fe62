"""fedsynth's Flower ServerApp."""
