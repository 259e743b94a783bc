"""edgepack.boards"""
