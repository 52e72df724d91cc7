"""The thesis's eight LSTM/TCN autoencoders (Appendix B): plain nets (:mod:`.nets`), the LightningModule
(:mod:`.module`) and the detector that trains and scores them (:mod:`.detector`)."""
