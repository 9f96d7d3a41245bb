# Reference Laplace (nAGQ = 1) fits of generalized linear mixed models with lme4's glmer,
# pinned in lme4_glmm.json (for lmmhmc's future GLMM support; no tests read it yet).
#
# Run from the repository root:   Rscript tests/reference/lme4_glmm.R
# (needs R with lme4 and jsonlite).  Data: the lme4 CSVs in /work/shared/data/lme4 or, where
# bundled, lmmhmc/datasets (set LME4_DATA to the folder holding cbpp.csv and VerbAgg.csv).
#
# Each model is fitted with bobyqa (rhoend 1e-10) and with nloptwrap (xtol_abs = ftol_abs =
# 1e-12); the fit with the lower -2 log L is pinned and the other is stored under "check".
# objective = -2 * logLik(fit): the "deviance" column of lme4's AIC table, normalising
# constants (binomial coefficients, log y!) included.  Names are lmmhmc's (formulaic's):
# treatment contrasts, "period[T.2]", "btype[T.scold]", ...; random-effect columns "1|herd".
suppressPackageStartupMessages({library(lme4); library(jsonlite)})

args <- commandArgs(trailingOnly = FALSE)
here <- dirname(normalizePath(sub("^--file=", "", args[grep("^--file=", args)])))
root <- normalizePath(file.path(here, "..", ".."))
shared <- Sys.getenv("LME4_DATA", "/work/shared/data/lme4")
pick <- function(file) {
  bundled <- file.path(root, "lmmhmc", "datasets", file)
  if (file.exists(bundled)) bundled else file.path(shared, file)
}

cbpp <- read.csv(pick("cbpp.csv"))
cbpp$herd <- factor(cbpp$herd, levels = sort(unique(cbpp$herd)))
cbpp$period <- factor(cbpp$period, levels = 1:4)

grouse <- read.csv(pick("grouseticks.csv"))
for (v in c("INDEX", "BROOD", "LOCATION", "YEAR")) grouse[[v]] <- factor(grouse[[v]])

verb <- read.csv(pick("VerbAgg.csv"))
verb$btype <- factor(verb$btype, levels = c("curse", "scold", "shout"))  # lme4's level order
verb$situ <- factor(verb$situ, levels = c("other", "self"))
verb$Gender <- factor(verb$Gender, levels = c("F", "M"))
verb$id <- factor(verb$id)
verb$item <- factor(verb$item)
verb$y <- as.integer(verb$r2 == "Y")

cases <- list(
  cbpp = list(
    r = cbind(incidence, size - incidence) ~ period + (1 | herd), family = binomial(),
    data = cbpp, factors = "period",
    lmmhmc = "cbind(incidence, size - incidence) ~ period + (1 | herd), binomial (logit)",
    theta_order = "herd.(Intercept)"),
  grouseticks = list(
    r = TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION),
    family = poisson(), data = grouse, factors = "YEAR",
    lmmhmc = "TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION), poisson (log), YEAR categorical",
    theta_order = c("BROOD.(Intercept)", "INDEX.(Intercept)", "LOCATION.(Intercept)")),
  VerbAgg = list(
    r = y ~ Anger + Gender + btype + situ + (1 | id) + (1 | item), family = binomial(),
    data = verb, factors = c("Gender", "btype", "situ"),
    lmmhmc = "r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item), bernoulli (logit), r2 = 1 for 'Y'",
    theta_order = c("id.(Intercept)", "item.(Intercept)"))
)

beta_name <- function(n, case) {
  if (n == "(Intercept)") return("Intercept")
  for (f in case$factors) for (l in levels(case$data[[f]]))
    if (n == paste0(f, l)) return(sprintf("%s[T.%s]", f, l))
  n
}

fit_case <- function(case) {
  ctrl <- list(
    bobyqa = glmerControl(optimizer = "bobyqa", calc.derivs = TRUE,
                          optCtrl = list(rhoend = 1e-10, maxfun = 100000)),
    nloptwrap = glmerControl(optimizer = "nloptwrap", calc.derivs = TRUE,
                             optCtrl = list(xtol_abs = 1e-12, ftol_abs = 1e-12, xtol_rel = 0,
                                            ftol_rel = 0, maxeval = 100000)))
  fits <- lapply(ctrl, function(cc)
    glmer(case$r, data = case$data, family = case$family, nAGQ = 1, control = cc))
  obj <- sapply(fits, function(f) -2 * as.numeric(logLik(f)))
  best <- names(which.min(obj)); other <- setdiff(names(fits), best)
  fit <- fits[[best]]
  theta <- getME(fit, "theta")
  stopifnot(setequal(names(theta), case$theta_order))
  fe <- fixef(fit); se <- sqrt(diag(as.matrix(vcov(fit))))
  bn <- vapply(names(fe), beta_name, "", case = case)
  vc <- as.data.frame(VarCorr(fit))
  sds <- setNames(as.list(vc$sdcor), paste0("1|", vc$grp))
  contr <- lapply(setNames(case$factors, case$factors), function(f)
    list(levels = levels(case$data[[f]]), contrasts = "contr.treatment",
         reference = levels(case$data[[f]])[1]))
  list(
    formula_r = paste(deparse(case$r), collapse = " "),
    family = paste(case$family$family, case$family$link),
    lmmhmc = case$lmmhmc,
    n_obs = nobs(fit),
    objective = unname(obj[best]),
    deviance_lme4 = deviance(fit),
    theta = as.list(theta),
    theta_lmmhmc = unname(theta[case$theta_order]),
    beta = setNames(as.list(unname(fe)), unname(bn)),
    se = setNames(as.list(unname(se)), unname(bn)),
    sds = sds,
    factors = contr,
    optimizer = best,
    converged_message = paste(fit@optinfo$conv$lme4$messages, collapse = "; "),
    check = list(optimizer = other, objective = unname(obj[other]),
                 max_abs_theta_diff = max(abs(getME(fits[[other]], "theta") - theta)),
                 max_abs_beta_diff = max(abs(fixef(fits[[other]]) - fe))))
}

out <- list(
  generated_by = "tests/reference/lme4_glmm.R",
  versions = list(R = R.version.string, lme4 = as.character(packageVersion("lme4")),
                  Matrix = as.character(packageVersion("Matrix")),
                  jsonlite = as.character(packageVersion("jsonlite"))),
  notes = paste("Laplace approximation (nAGQ = 1). objective: -2*logLik(fit) with normalising",
                "constants; deviance_lme4: deviance(fit); theta: getME(fit, 'theta') (sd of a",
                "scalar term); se: sqrt(diag(vcov(fit))); sds: as.data.frame(VarCorr(fit))$sdcor"),
  cases = list())
for (nm in names(cases)) {
  t0 <- Sys.time()
  out$cases[[nm]] <- fit_case(cases[[nm]])
  cat(nm, ": -2 log L", out$cases[[nm]]$objective, " (", format(Sys.time() - t0), ")\n")
}
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE, null = "null"),
           file.path(here, "lme4_glmm.json"))
