"""fedsynth's Flower ClientApp (one hospital per SuperNode)."""
