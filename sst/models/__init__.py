"""Model kinds: the network (model.py) and the classical baselines, and what serves only the network."""
