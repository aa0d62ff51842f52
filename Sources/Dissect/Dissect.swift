// placeholder, replaced by the dissect implementation
