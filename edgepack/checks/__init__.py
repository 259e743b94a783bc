"""edgepack.checks"""
