"""Analyses of a graph that change nothing: what TensorRT's parser would reject (``trt_support``)."""
