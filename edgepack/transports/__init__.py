"""edgepack.transports"""
