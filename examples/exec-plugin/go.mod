module countersign.invalid/examples/exec-plugin

go 1.22
