"""Entropy models of LTCHM: the K-component mixture on y and its spatial context models."""
