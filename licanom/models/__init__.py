"""Autoencoder networks and their training."""
