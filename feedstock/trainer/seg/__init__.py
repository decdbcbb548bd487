"""feedstock.trainer.seg: segmentation (FCN) twins of the classifier's net, layers, models, metrics, predict."""
