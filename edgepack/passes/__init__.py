"""edgepack.passes"""
