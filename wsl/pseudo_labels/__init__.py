"""Pseudo labels of the refinement methods (OICR, PCL, MIST) and the losses they teach with."""
