"""feedstock.trainer.nn: the network engine (numpy or cupy): layers, convolution, Net, fillers, SGD solver."""
