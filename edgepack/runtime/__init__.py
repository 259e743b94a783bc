"""edgepack.runtime"""
