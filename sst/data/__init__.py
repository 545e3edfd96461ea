"""Data: the datasets as distributed, their files, the preprocessed sessions and the network's inputs."""
