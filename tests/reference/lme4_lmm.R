# Reference ML and REML fits of linear mixed models with lme4, pinned in lme4_lmm.json.
#
# Run from the repository root:   Rscript tests/reference/lme4_lmm.R
# (needs R with lme4 and jsonlite; the Python tests only read the JSON).
#
# Every model is fitted twice with tight tolerances: nloptwrap (BOBYQA in NLopt) with
# xtol_abs = ftol_abs = 1e-12 and minqa's bobyqa with rhoend = 1e-12; the pinned values come
# from the fit with the lower objective, and the other fit's objective and theta are stored as
# a measure of how far the optimum is pinned ("check").  Names are mapped to lmmhmc's:
# fixed effects "Intercept", "x", "cond[T.b]", ...; random-effect columns "1|subj", "x|subj";
# theta is stored by lme4's name (getME(fit, "theta")) and, in "theta_lmmhmc", in lmmhmc's order
# (terms in formula order, each term's lower triangle column by column).
suppressPackageStartupMessages({library(lme4); library(jsonlite)})

args <- commandArgs(trailingOnly = FALSE)
here <- dirname(normalizePath(sub("^--file=", "", args[grep("^--file=", args)])))
root <- normalizePath(file.path(here, "..", ".."))
shared <- Sys.getenv("LME4_DATA", file.path(root, "lmmhmc", "datasets"))

unbalanced <- read.csv(file.path(root, "tests", "data", "unbalanced.csv"))
unbalanced$subj <- factor(unbalanced$subj)
unbalanced$item <- factor(unbalanced$item)
unbalanced$cond <- factor(unbalanced$cond)          # levels a, b: treatment contrasts, a = ref

grouse <- read.csv(file.path(shared, "grouseticks.csv"))
grouse$BROOD <- factor(grouse$BROOD)
grouse$LOCATION <- factor(grouse$LOCATION)
grouse$YEARF <- factor(grouse$YEAR)                 # lme4's grouseticks has YEAR as a factor
cake <- read.csv(file.path(shared, "cake.csv"))
cake$recipe <- factor(cake$recipe)
cake$replicate <- factor(cake$replicate)            # temp stays numeric

# lme4 fixed-effect name -> lmmhmc (formulaic) name
beta_names <- c("(Intercept)" = "Intercept", x = "x", condb = "cond[T.b]",
                YEARF96 = "YEAR[T.96]", YEARF97 = "YEAR[T.97]", YEAR = "YEAR",
                cHEIGHT = "cHEIGHT", recipeB = "recipe[T.B]", recipeC = "recipe[T.C]",
                temp = "temp")

cases <- list(
  crossed = list(
    r = y ~ x + cond + (1 + x | subj) + (1 | item), data = unbalanced, weights = NULL,
    py = "y ~ x + cond + (1 + x | subj) + (1 | item)", py_data = "tests/data/unbalanced.csv",
    theta_order = c("subj.(Intercept)", "subj.x.(Intercept)", "subj.x", "item.(Intercept)"),
    groups = c(subj = "subj", item = "item")),
  crossed_weighted = list(
    r = y ~ x + cond + (1 + x | subj) + (1 | item), data = unbalanced, weights = "w",
    py = "y ~ x + cond + (1 + x | subj) + (1 | item)", py_data = "tests/data/unbalanced.csv",
    theta_order = c("subj.(Intercept)", "subj.x.(Intercept)", "subj.x", "item.(Intercept)"),
    groups = c(subj = "subj", item = "item")),
  uncorrelated = list(
    r = y ~ x + cond + (1 + x || subj) + (1 | item), data = unbalanced, weights = NULL,
    py = "y ~ x + cond + (1 + x || subj) + (1 | item)", py_data = "tests/data/unbalanced.csv",
    theta_order = c("subj.(Intercept)", "subj.x", "item.(Intercept)"),
    groups = c(subj = "subj", subj.1 = "subj", item = "item")),
  grouseticks = list(
    r = log(TICKS + 1) ~ YEARF + cHEIGHT + (1 | BROOD) + (1 | LOCATION), data = grouse,
    weights = NULL,
    py = "np.log(TICKS + 1) ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | LOCATION)",
    py_data = "lmmhmc.datasets.load('grouseticks') (YEAR a categorical, as in lme4)",
    theta_order = c("BROOD.(Intercept)", "LOCATION.(Intercept)"),
    groups = c(BROOD = "BROOD", LOCATION = "LOCATION")),
  grouseticks_nested = list(
    r = log(TICKS + 1) ~ YEARF + cHEIGHT + (1 | LOCATION/BROOD), data = grouse, weights = NULL,
    py = "np.log(TICKS + 1) ~ YEAR + cHEIGHT + (1 | LOCATION/BROOD)",
    py_data = "lmmhmc.datasets.load('grouseticks') (YEAR a categorical, as in lme4)",
    theta_order = c("LOCATION.(Intercept)", "BROOD:LOCATION.(Intercept)"),
    groups = c(LOCATION = "LOCATION", "BROOD:LOCATION" = "LOCATION:BROOD")),
  grouseticks_year_numeric = list(
    r = log(TICKS + 1) ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | LOCATION), data = grouse,
    weights = NULL,
    py = "np.log(TICKS + 1) ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | LOCATION)",
    py_data = "lmmhmc.datasets.load('grouseticks') with YEAR converted to a number (95, 96, 97)",
    theta_order = c("BROOD.(Intercept)", "LOCATION.(Intercept)"),
    groups = c(BROOD = "BROOD", LOCATION = "LOCATION")),
  cake = list(
    r = angle ~ recipe + temp + (1 | recipe:replicate), data = cake, weights = NULL,
    py = "angle ~ recipe + temp + (1 | recipe:replicate)",
    py_data = "lmmhmc.datasets.load('cake') (temp numeric; recipe, replicate categorical)",
    theta_order = c("recipe:replicate.(Intercept)"),
    groups = c("recipe:replicate" = "recipe:replicate"))
)

col_name <- function(var, group) {
  paste0(if (var == "(Intercept)") "1" else var, "|", group)
}

fit_one <- function(case, reml) {
  ctrl <- list(
    nloptwrap = lmerControl(optimizer = "nloptwrap", calc.derivs = FALSE,
                            optCtrl = list(xtol_abs = 1e-12, ftol_abs = 1e-12, xtol_rel = 0,
                                           ftol_rel = 0, maxeval = 100000)),
    bobyqa = lmerControl(optimizer = "bobyqa", calc.derivs = FALSE,
                         optCtrl = list(rhoend = 1e-12, maxfun = 100000)))
  fits <- lapply(ctrl, function(cc) {
    d <- case$data
    if (is.null(case$weights)) lmer(case$r, data = d, REML = reml, control = cc)
    else { d$.w <- d[[case$weights]]; lmer(case$r, data = d, REML = reml, weights = .w,
                                           control = cc) }
  })
  obj <- sapply(fits, function(f) -2 * as.numeric(logLik(f)))
  best <- names(which.min(obj)); other <- setdiff(names(fits), best)
  fit <- fits[[best]]
  theta <- getME(fit, "theta")
  stopifnot(setequal(names(theta), case$theta_order))
  fe <- fixef(fit)
  se <- sqrt(diag(as.matrix(vcov(fit))))
  bn <- unname(beta_names[names(fe)]); stopifnot(!anyNA(bn))
  vc <- as.data.frame(VarCorr(fit))
  sds <- list(); corrs <- list()
  for (i in seq_len(nrow(vc))) {
    g <- vc$grp[i]
    if (g == "Residual") next
    grp <- unname(case$groups[g]); stopifnot(!is.na(grp))
    if (is.na(vc$var2[i])) sds[[col_name(vc$var1[i], grp)]] <- vc$sdcor[i]
    else corrs[[length(corrs) + 1]] <- list(
      group = grp, var1 = col_name(vc$var1[i], grp), var2 = col_name(vc$var2[i], grp),
      corr = vc$sdcor[i])
  }
  list(
    objective = unname(obj[best]),
    theta = as.list(theta),
    theta_lmmhmc = unname(theta[case$theta_order]),
    beta = setNames(as.list(unname(fe)), bn),
    se = setNames(as.list(unname(se)), bn),
    sigma = sigma(fit),
    sds = sds,
    corrs = corrs,
    optimizer = best,
    converged_message = paste(fit@optinfo$conv$lme4$messages, collapse = "; "),
    check = list(optimizer = other, objective = unname(obj[other]),
                 max_abs_theta_diff = max(abs(getME(fits[[other]], "theta") - theta)))
  )
}

out <- list(
  generated_by = "tests/reference/lme4_lmm.R",
  versions = list(R = R.version.string, lme4 = as.character(packageVersion("lme4")),
                  Matrix = as.character(packageVersion("Matrix")),
                  jsonlite = as.character(packageVersion("jsonlite"))),
  notes = paste("objective: -2*logLik(fit) (ML deviance; for REML fits lme4's REML criterion);",
                "theta: getME(fit, 'theta'); se: sqrt(diag(vcov(fit)));",
                "sds and corrs: as.data.frame(VarCorr(fit)); weights mean Var(eps_i) = sigma^2 / w_i"),
  cases = list())
for (nm in names(cases)) {
  case <- cases[[nm]]
  out$cases[[nm]] <- list(
    formula_r = paste(deparse(case$r), collapse = " "),
    formula_lmmhmc = case$py,
    data = case$py_data,
    weights = case$weights,
    ml = fit_one(case, FALSE),
    reml = fit_one(case, TRUE))
  cat(nm, ": ML", out$cases[[nm]]$ml$objective, " REML", out$cases[[nm]]$reml$objective, "\n")
}
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE, null = "null"),
           file.path(here, "lme4_lmm.json"))
