"""VOC-format data: annotations, image-level labels, region proposals, transforms, datamodules."""
