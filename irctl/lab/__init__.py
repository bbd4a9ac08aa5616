"""The local drill lab (docs/lab.md): namespace hosts (`netns`), the cluster on them
(`cluster`, `hosts`), its AWS picture in moto (`cloud`), the reconciler that keeps the two
true (`reconciler`), faults (`faults`), and the processes run inside (`loadgen`, `holder`)."""
