# Long brms (Stan NUTS) runs pinned in brms_posterior.json: posterior mean, sd and Monte Carlo
# standard errors of every scalar parameter and every random effect, by lmmhmc's names.
#
# Run from the repository root:   Rscript tests/reference/brms_posterior.R
# (about 15 minutes on 2 cores; the Python tests only read the JSON).  rstan looks for Boost
# under system.file("include", package = "BH"); where that is empty (Debian's r-cran-bh), point
# BOOST_DIR at a folder holding a link boost -> /usr/include/boost (the default below makes one).
#
# Models (data tests/data/unbalanced.csv):
#  A  y ~ 0 + Intercept + x + cond + (1 + x | subj) + (1 | item)
#     b ~ normal(0, 5) (on the real intercept too: `0 + Intercept`), sd and sigma ~
#     half-student_t(3, 0, 2.5), cor ~ lkj(2).
#  B  the weighted model Var(eps_i) = sigma^2 / w_i, written as a distributional model
#     sigma_i = exp(b_sigma_Intercept + lw_i) with lw = -0.5 log(w), b_sigma_Intercept ~ normal(0, 1),
#     i.e. sigma = exp(b_sigma_Intercept) ~ LogNormal(0, 1); other priors as in A.
suppressPackageStartupMessages({library(brms); library(posterior); library(jsonlite)})

args <- commandArgs(trailingOnly = FALSE)
here <- dirname(normalizePath(sub("^--file=", "", args[grep("^--file=", args)])))
root <- normalizePath(file.path(here, "..", ".."))
boost <- Sys.getenv("BOOST_DIR", "")
if (boost == "" && !dir.exists(file.path(system.file("include", package = "BH"), "boost"))) {
  boost <- file.path(tempdir(), "boostdir"); dir.create(boost, showWarnings = FALSE)
  invisible(file.symlink("/usr/include/boost", file.path(boost, "boost")))
}
if (boost != "") rstan::rstan_options(boost_lib = boost)

CHAINS <- as.integer(Sys.getenv("BRMS_CHAINS", "4"))
WARMUP <- as.integer(Sys.getenv("BRMS_WARMUP", "1000"))
DRAWS <- as.integer(Sys.getenv("BRMS_DRAWS", "5000"))
CORES <- as.integer(Sys.getenv("BRMS_CORES", "2"))
SEED <- 20261130

d <- read.csv(file.path(root, "tests", "data", "unbalanced.csv"))
d$cond <- factor(d$cond)
d$lw <- -0.5 * log(d$w)
fixed <- y ~ 0 + Intercept + x + cond + (1 + x | subj) + (1 | item)
common <- c(prior(normal(0, 5), class = b), prior(student_t(3, 0, 2.5), class = sd),
            prior(lkj(2), class = cor))
models <- list(
  A = list(formula = bf(fixed),
           prior = c(common, prior(student_t(3, 0, 2.5), class = sigma)),
           sigma_prior_lmmhmc = "half_student_t(3, 2.5)"),
  B = list(formula = bf(fixed, sigma ~ 1 + offset(lw)),
           prior = c(common, prior(normal(0, 1), class = Intercept, dpar = sigma)),
           sigma_prior_lmmhmc = "LogNormal(0, 1)"))

# brms name -> (lmmhmc variable, level)
lmmhmc_name <- function(v) {
  fixed <- c(b_Intercept = "Intercept", b_x = "x", b_condb = "cond[T.b]", sigma = "sigma",
             sd_subj__Intercept = "1|subj_sigma", sd_subj__x = "x|subj_sigma",
             sd_item__Intercept = "1|item_sigma", cor_subj__Intercept__x = "subj_corr")
  if (v %in% names(fixed)) return(c(fixed[[v]], NA))
  m <- regmatches(v, regexec("^r_(subj|item)\\[([^,]+),(Intercept|x)\\]$", v))[[1]]
  if (length(m) == 4) return(c(paste0(if (m[4] == "Intercept") "1" else m[4], "|", m[2]), m[3]))
  c(NA, NA)
}

out <- list(
  generated_by = "tests/reference/brms_posterior.R",
  versions = list(R = R.version.string, brms = as.character(packageVersion("brms")),
                  rstan = as.character(packageVersion("rstan")),
                  StanHeaders = as.character(packageVersion("StanHeaders")),
                  posterior = as.character(packageVersion("posterior"))),
  settings = list(chains = CHAINS, warmup = WARMUP, draws_per_chain = DRAWS, seed = SEED,
                  adapt_delta = 0.95, data = "tests/data/unbalanced.csv"),
  notes = paste("mean, sd: posterior mean and sd; mcse_mean, mcse_sd, ess_bulk, ess_tail, rhat:",
                "posterior::summarise_draws. Model B's sigma is exp(b_sigma_Intercept)."),
  models = list())

for (nm in names(models)) {
  m <- models[[nm]]
  code <- make_stancode(m$formula, data = d, prior = m$prior)
  if (nm == "B") {  # the offset is in the likelihood, and the sigma intercept is not centred
    stopifnot(grepl("sigma += Intercept_sigma + offsets_sigma;", code, fixed = TRUE),
              grepl("real b_sigma_Intercept = Intercept_sigma;", code, fixed = TRUE),
              grepl("lprior += normal_lpdf(Intercept_sigma | 0, 1);", code, fixed = TRUE))
  }
  stopifnot(grepl("lprior += normal_lpdf(b | 0, 5);", code, fixed = TRUE),
            grepl("lkj_corr_cholesky_lpdf(L_2 | 2)", code, fixed = TRUE))
  t0 <- Sys.time()
  fit <- brm(m$formula, data = d, prior = m$prior, chains = CHAINS, cores = CORES,
             warmup = WARMUP, iter = WARMUP + DRAWS, seed = SEED, backend = "rstan",
             control = list(adapt_delta = 0.95), refresh = 0, silent = 2)
  secs <- as.numeric(difftime(Sys.time(), t0, units = "secs"))
  draws <- as_draws_df(fit)
  if (nm == "B") draws <- mutate_variables(draws, sigma = exp(b_sigma_Intercept))
  vars <- setdiff(variables(draws), c("lprior", "lp__"))
  summ <- summarise_draws(subset_draws(draws, variable = vars), mean, sd, mcse_mean, mcse_sd,
                          ess_bulk, ess_tail, rhat)
  rows <- list()
  for (i in seq_len(nrow(summ))) {
    nmap <- lmmhmc_name(summ$variable[i])
    if (is.na(nmap[1])) next
    rows[[length(rows) + 1]] <- list(
      variable = nmap[1], level = if (is.na(nmap[2])) NULL else nmap[2],
      brms = summ$variable[i], mean = summ$mean[i], sd = summ$sd[i],
      mcse_mean = summ$mcse_mean[i], mcse_sd = summ$mcse_sd[i], ess_bulk = summ$ess_bulk[i],
      ess_tail = summ$ess_tail[i], rhat = summ$rhat[i])
  }
  np <- nuts_params(fit)
  out$models[[nm]] <- list(
    formula = paste(deparse(m$formula$formula), collapse = " "),
    sigma_formula = if (nm == "B") "sigma ~ 1 + offset(lw), lw = -0.5 * log(w)" else NULL,
    priors = trimws(paste(m$prior$prior, m$prior$class, m$prior$dpar)),
    sigma_prior_lmmhmc = m$sigma_prior_lmmhmc,
    divergences = sum(np$Value[np$Parameter == "divergent__"]),
    seconds = secs,
    summary = rows)
  cat(nm, ":", length(rows), "quantities,", secs, "s; max rhat", max(summ$rhat),
      "; min ess_bulk", min(summ$ess_bulk), "; divergences", out$models[[nm]]$divergences, "\n")
}
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE, null = "null"),
           file.path(here, "brms_posterior.json"))
