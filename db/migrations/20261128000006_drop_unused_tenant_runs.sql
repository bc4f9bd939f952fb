-- `gofer_tenant_runs` (a page of full run rows, migration `create_tenant_read_functions`) is no
-- longer called: the run list reads a page's ids (`gofer_tenant_run_ids`), then only the rows it
-- does not remember (`gofer_tenant_runs_by_id`). A tenant-scoped entry point nobody calls is
-- surface without a use.
DROP FUNCTION gofer_tenant_runs(text, text, text, bigint, bigint);
