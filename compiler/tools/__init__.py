"""Tools around the compile: the TensorRT pre-flight (``check_trt``); goldens, localize and the HTML report move
here as the layout of DESIGN.md is completed."""
