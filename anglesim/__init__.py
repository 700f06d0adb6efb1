"""anglesim: how training and fine-tuning shape a network's sensitivity to grating orientation.

The data flow is one-way (see README, "Architecture"):
spec -> stimuli -> model -> training phases -> measurements -> Dataset -> figure.
"""

__version__ = "0.1.0"
