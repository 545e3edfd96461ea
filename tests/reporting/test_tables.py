"""sst/reporting/tables.py: one table, the same numbers in text, markdown, LaTeX and CSV."""


from sst.reporting import tables


def test_table_formats_hold_the_same_numbers():
    t = tables.Table("SEED_IV & co", [tables.Column("model"), tables.Column("accuracy %", "acc", kind="pm"),
                                       tables.Column("CI", "ci", kind="interval", signed=True),
                                       tables.Column("p", "p", 3)], notes=["a 50% note"])
    t.rows += [["linear_svm", (84.123, 9.7), (-1.5, 2.25), 0.0312], ["chance", (33.333, None), None, None]]
    assert t.render("text").splitlines() == [
        "SEED_IV & co",
        "model          accuracy %              CI      p",
        "linear_svm  84.12 +- 9.70  [-1.50, +2.25]  0.031",
        "chance              33.33               -      -",
        "a 50% note"]
    assert t.render("csv").splitlines() == ["model,acc_mean,acc_std,ci_low,ci_high,p",
                                            "linear_svm,84.123,9.7,-1.5,2.25,0.0312", "chance,33.333,,,,"]
    assert "| linear_svm | 84.12 ± 9.70 | [-1.50, +2.25] | 0.031 |" in t.render("markdown")
    latex = t.render("latex")
    assert "\\caption{SEED\\_IV \\& co}" in latex and latex.startswith("% needs \\usepackage{booktabs}")
    assert latex.index("a 50\\% note") > latex.index("\\end{tabular}")       # notes below the table, not in the caption
    assert "linear\\_svm & 84.12 $\\pm$ 9.70 & [-1.50, +2.25] & 0.031 \\\\" in latex
