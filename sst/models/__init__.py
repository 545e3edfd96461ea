"""Model kinds: the network (model.py), DGCNN and the classical baselines; a finished run's model."""
