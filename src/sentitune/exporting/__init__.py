"""Export: a run's model as ONNX for fast CPU inference.

    onnx        the fp32 graph, traced from torch and verified against it
    int8        the exact rewrite and dynamic int8 quantization of the encoder's MatMuls
    run_export  `export`: both, into RUN_DIR/onnx, with label agreement on validation texts
"""
