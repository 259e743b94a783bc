"""edgepack.deploy"""
