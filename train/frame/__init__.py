"""Frame scorer training (Reg-STN and the Table I baselines): config, data, loop, evaluation, export."""
