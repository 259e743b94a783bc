"""edgepack.pipeline"""
