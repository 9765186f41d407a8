"""Entry points that run on Ray: preprocess, train, compress scenes, evaluate, demo."""
