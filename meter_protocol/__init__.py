"""The smsmeter meter protocol: frames, crypto, segmentation, XML documents and a reference meter.

Pure code: bytes and values in, values out. No I/O, no clock, no randomness that is not passed in.
"""
