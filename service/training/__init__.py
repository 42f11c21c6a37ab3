"""Training the encoder: the triplet loss FaceNet was trained with."""
